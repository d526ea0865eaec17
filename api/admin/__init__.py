"""Administration: the audit trail queried by admins (filters, keyset paging)."""
