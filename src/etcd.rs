//! etcd v3 client (JSON gateway) — being written.
