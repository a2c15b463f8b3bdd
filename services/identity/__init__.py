"""Identity: mini-program login (code2Session), refresh tokens, merchant accounts, and the
WeChat platform access_token the other services send with."""
