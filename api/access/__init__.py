"""Who may see which patient: care-team membership for clinicians, oneself for patients
(ARCHITECTURE.md §7). Any patient the caller may not see is reported as not found."""
