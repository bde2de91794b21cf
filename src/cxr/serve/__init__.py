"""The web app and API: `cxr serve MODEL`."""
