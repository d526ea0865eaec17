"""Reading a patient's observations (vital signs and medication events) over a time range."""
