"""SQL shipped as package data: schema migrations (migrations/) and the analysis views (NN_<layer>_<name>.sql)."""
