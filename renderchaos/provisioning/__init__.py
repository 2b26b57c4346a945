"""Provisioning: bringing a platform up (the reference stack, a user's compose file) or finding
the containers of a running, disposable deployment; labelling everything for the reaper."""
