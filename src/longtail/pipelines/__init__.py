"""The stages of the study, one Kedro pipeline each (see ``longtail.pipeline_registry``)."""
