"""The patient portal: pages and API a patient uses to see their own care (issue 12, ADR 0027).

Patient-facing words live in `api/portal/text_<part>.py` catalogues and are read through
`api.portal.text.t`, so they can be checked for reading level and translated in one place.
"""
