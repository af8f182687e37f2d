"""The six stages of the study, one Kedro pipeline each."""
