"""`settle demo`: the local world (both networks in one process) and the stories it tells."""
