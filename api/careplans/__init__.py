"""Care plans through the API: read, change (validated, versioned, audited, published to
`rpm.care-plans.v1`) and the what-if replay of a proposed plan (ADR 0021)."""
