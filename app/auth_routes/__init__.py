"""Login, token refresh and logout: the routes that hand out and take back a user's tokens."""
