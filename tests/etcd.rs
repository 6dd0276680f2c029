//! etcd tests — being written.
