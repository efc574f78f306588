"""The long-running scheduler process: APScheduler calling `tick` on an interval."""
