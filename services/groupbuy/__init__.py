"""Group buying (拼团): campaigns, groups, completion and expiry."""
