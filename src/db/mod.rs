pub mod local_pg;
