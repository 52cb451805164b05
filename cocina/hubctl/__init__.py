"""The hub from the command line: `cocina push`, `models`, `versions`, `deployments`, on this machine's hub (its
API answered in-process by the server's own application) or on a server over HTTP."""
