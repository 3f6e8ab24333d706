"""The 110 call path: intake, jurisdictions, recommendation, the pure dispatch state machine, and the desk."""
