"""rlm-executor-ray: the ``ray`` batch executor (``rlm batch --executor ray``)."""
