"""Patient-facing words of the consent page (issue 12; ADR 0024), and the consent documents.

A document's text is kept under its version (`consent.doc.<version>.*`): a new version of a
document is a new set of ids, and the old text stays here for as long as a grant names it.
Which version is current for each tier is in api/consents/service.py (TIERS).
"""

from __future__ import annotations

MESSAGES: dict[str, str] = {
    "consent.title": "My consent",
    "consent.intro": (
        "You choose how we use your health data. You can change your mind at any time. "
        "We keep a record of each choice you make."
    ),
    # The tiers, by name.
    "consent.tier.collect": "Collect my health readings",
    "consent.tier.share_care_team": "Share my data with my care team",
    "consent.tier.research": "Use my data to improve care and for research",
    # The documents, version 1.
    "consent.doc.collect-v1.what": (
        "Your devices send your readings to us. We keep them in your health record. "
        "We use them to watch over your health."
    ),
    "consent.doc.collect-v1.withdraw": (
        "We stop taking new readings from your devices within {seconds} seconds. "
        "Your care team will not see new readings, and they will not get alerts from them. "
        "The readings we already have stay in your record."
    ),
    "consent.doc.share_care_team-v1.what": (
        "The doctors and nurses of your care team can see your readings and alerts. They use them to look after you."
    ),
    # What saying no does (ADR 0024). The text of version 1 changed when sharing began to be
    # enforced: what the patient agrees to (`.what`) is the same, only what a "no" does is new.
    "consent.doc.share_care_team-v1.withdraw": (
        "Your care team will no longer see your readings. "
        "They will not be told when a reading is outside your limits. "
        "Your devices still send readings unless you also stop collecting. "
        'In an emergency, a doctor or nurse can still open your record. You will see that in "Who viewed my record". '
        "You can share again at any time."
    ),
    "consent.doc.research-v1.what": (
        "We may use your data, without your name, to learn how to give better care. "
        "It may also be used in approved research."
    ),
    "consent.doc.research-v1.withdraw": (
        "We will not use your data for new studies or reviews. Work that already used your data will not be undone."
    ),
    # Labels.
    "consent.what_it_means": "What this means",
    "consent.if_withdrawn": "If you say no",
    "consent.document": "Text: {version}",
    "consent.state.given": "You said yes on {date}.",
    "consent.state.withdrawn": "You said no on {date}.",
    "consent.state.not_given": "You have not said yes to this.",
    "consent.state.enrolment": "You said yes when you joined the program.",
    "consent.give": "Say yes",
    "consent.withdraw": "Say no",
    "consent.give.label": "Say yes to: {tier}",
    "consent.withdraw.label": "Say no to: {tier}",
    "consent.done.given": "Thank you. We saved your choice: yes to {tier}.",
    "consent.done.withdrawn": "We saved your choice: no to {tier}.",
    "consent.error.already_given": "You have already said yes to this.",
    "consent.error.not_given": "You have not said yes to this, so there is nothing to stop.",
    "consent.error.new_text": "The text has changed since you opened the page. Please read it again.",
    "consent.error.form.title": "Form out of date",
    "consent.error.form": "This form is out of date. Please load the page again and try once more.",
    "consent.error.not_patient": "This page is only for patients, to see their own choices.",
    "consent.error.unavailable": "We could not save your choice just now. Please try again in a minute.",
    # Checking before collection or sharing stops.
    "consent.confirm.collect.title": "Stop collecting your readings?",
    "consent.confirm.collect.yes": "Yes, stop collecting",
    "consent.confirm.share_care_team.title": "Stop sharing with your care team?",
    "consent.confirm.share_care_team.yes": "Yes, stop sharing",
    "consent.confirm.lead": "Please check before you say no.",
    "consent.confirm.no": "No, go back",
    # History.
    "consent.history": "My past choices",
    "consent.history.none": "No choices yet.",
    "consent.history.when": "When",
    "consent.history.choice": "Choice",
    "consent.history.version": "Text",
    "consent.history.yes": "Yes to: {tier}",
    "consent.history.no": "No to: {tier}",
    "consent.history.at_enrolment": "When you joined",
}
