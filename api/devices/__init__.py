"""Devices through the API: provision (credentials once), revoke, bind and list, through
the platform's one provisioning library (`core.clients.provisioning`)."""
