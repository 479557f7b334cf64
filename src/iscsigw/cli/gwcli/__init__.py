"""``gwcli``: the interactive management shell, a REST client of the gateway API.

``client`` speaks HTTP to the API, ``args`` turns what people type (both ceph-iscsi spellings)
into API parameters, ``fmt`` renders ``ls`` summaries and ``info`` pages, ``context`` holds the
config the API returned plus cached live state, ``nodes`` is the configshell-fb tree and
``iscsigw.cli.shell`` the command line entry point.
"""
