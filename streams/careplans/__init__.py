"""Care plans in the worker: the compacted `rpm.care-plans.v1` topic kept in a Faust table."""
