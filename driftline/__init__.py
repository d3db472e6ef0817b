"""driftline's own core: the feature spec and settings every other package builds on, and the
`driftline` command. Modules here import only the standard library at module level, so the
serving environment (seldon/) can use `driftline.spec` without the orchestration packages."""
