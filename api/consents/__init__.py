"""Consent in tiers: what a patient agreed to, in which document version, with its history."""
