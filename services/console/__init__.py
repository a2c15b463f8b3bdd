"""The merchant console: static pages (plain ES modules, no build step) that the admin side
of the gateway serves under /console/; the browser calls the admin API on that origin."""
