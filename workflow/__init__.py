"""signoff: every member of staff re-reads the policy each year, and says so."""
