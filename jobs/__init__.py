"""Background and scheduled jobs run by SAQ workers."""
