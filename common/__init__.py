"""wvlp.common: helpers every stage shares (output-folder safety, config checks, user-error exits)."""
