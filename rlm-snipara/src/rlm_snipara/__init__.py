"""rlm-snipara: context tools (``context_query``, ``sections``, ``search``,
``shared_context``, ``decompose``, ``multi_query``) and agent memory
(``rlm_remember``, ``rlm_recall``) for rlm.

Two providers serve the same tools: the hosted Snipara service
(:mod:`rlm_snipara.hosted`, needs a key and a project) and a local,
offline SQLite/FTS5 index of a documentation directory
(:mod:`rlm_snipara.index`, :mod:`rlm_snipara.memory`).  The plugin's hooks
live in :mod:`rlm_snipara.plugin`; which provider is used is decided in
:func:`rlm_snipara.config.choose_provider`.
"""

__version__ = "0.1.0"
