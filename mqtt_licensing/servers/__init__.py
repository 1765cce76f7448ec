"""HTTP servers: the vendor activation server and the floating license server."""
