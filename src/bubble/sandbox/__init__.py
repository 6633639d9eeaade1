"""The kernel layer: filter construction, the launcher and the notification supervisor.

Only `bubble run` imports this package; the orchestrator and the web UI start it as a
subprocess (DESIGN §1).
"""
