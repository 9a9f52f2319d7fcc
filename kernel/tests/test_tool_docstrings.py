"""``@tool`` reads reST, Google and NumPy docstrings: the tool's description and each parameter's."""

from __future__ import annotations

from rlm.tools import tool


def _props(spec) -> dict:
    return dict(spec.parameters["properties"])


def test_rest_docstring():
    @tool
    def search(query: str, limit: int = 5) -> list:
        """Search the corpus.

        Looks at every file
        and ranks the hits.

        :param query: the words
            to look for
        :param limit: at most this many hits
        :returns: the hits
        :raises ValueError: on a bad query
        """

    assert search.description == "Search the corpus.\n\nLooks at every file\nand ranks the hits."
    props = _props(search)
    assert props["query"] == {"type": "string", "description": "the words to look for"}
    assert props["limit"] == {"type": "integer", "description": "at most this many hits", "default": 5}
    assert search.parameters["required"] == ["query"]


def test_google_docstring():
    @tool
    async def search(query: str, ctx, limit: int = 5) -> list:
        """Search the corpus.

        Looks at every file.

        Args:
            query (str): the words
                to look for
            limit: at most this many hits
            ctx: the tool context

        Returns:
            the hits
        """

    assert search.description == "Search the corpus.\n\nLooks at every file."
    props = _props(search)
    assert props["query"]["description"] == "the words to look for"
    assert props["limit"]["description"] == "at most this many hits"
    assert "ctx" not in props and search.takes_context


def test_numpy_docstring():
    @tool
    def search(query: str, limit: int = 5) -> list:
        """Search the corpus.

        Looks at every file.

        Parameters
        ----------
        query : str
            the words
            to look for
        limit : int, optional
            at most this many hits

        Returns
        -------
        list
            the hits
        """

    assert search.description == "Search the corpus.\n\nLooks at every file."
    props = _props(search)
    assert props["query"]["description"] == "the words to look for"
    assert props["limit"]["description"] == "at most this many hits"


def test_docstring_without_a_params_section():
    @tool
    def ping(host: str) -> str:
        """Ping a host.

        Sends one packet and waits a second.
        """

    assert ping.description == "Ping a host.\n\nSends one packet and waits a second."
    assert _props(ping) == {"host": {"type": "string"}}


def test_a_param_documented_but_not_in_the_signature_is_ignored():
    @tool
    def ping(host: str) -> str:
        """Ping a host.

        :param host: the host name
        :param port: no such parameter
        """

    assert ping.description == "Ping a host."
    assert _props(ping) == {"host": {"type": "string", "description": "the host name"}}
    assert ping.parameters["additionalProperties"] is False


def test_no_docstring():
    @tool
    def ping(host: str) -> str:
        return host

    assert ping.description == "ping"
    assert _props(ping) == {"host": {"type": "string"}}


def test_an_explicit_description_wins():
    @tool(name="p", description="Custom.")
    def ping(host: str) -> str:
        """Ping a host.

        :param host: the host name
        """

    assert (ping.name, ping.description) == ("p", "Custom.")
    assert _props(ping)["host"]["description"] == "the host name"


def test_the_standard_tools_keep_their_parameter_descriptions():
    from rlm.standard_tools import file_read as read_file

    props = _props(read_file)
    assert props["path"]["description"].startswith("File path")
    assert "Args:" not in read_file.description and read_file.description.startswith("Read a window")
    assert "next_offset" in read_file.description  # the long description stays
