"""The web console (issue 11): a static single-page app served at ``/console``, talking only to the public API."""
