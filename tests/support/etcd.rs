//! Starting etcd on loopback for tests — being written.
