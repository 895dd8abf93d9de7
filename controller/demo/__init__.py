"""The embedded demo: a strict local AWS, a function with good and bad versions, simulated traffic,
and the controller rolling out one version and rolling back another, live on the terminal."""
