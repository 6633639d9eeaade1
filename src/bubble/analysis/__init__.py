"""Events to meaning: pure functions over event streams (report, signatures, ECS, suggest,
diff). Imports the leaves only; used by the CLI, the orchestrator and the web alike."""
