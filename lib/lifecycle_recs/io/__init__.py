"""The only readers and writers of Delta tables and run files: ``tables`` (every table,
by path or catalog name, with its contract), ``runs`` (the run log: what is published),
``scratch`` (a private directory per run step). Only stages call the writers."""
