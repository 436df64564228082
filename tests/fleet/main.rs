//! A fleet of controllers on one distributed object store: a three-node Garage cluster
//! (scripts/ci/garage.sh, replication factor 3) holding the repositories of several
//! controllers at once — each its own state folder, standing for its own server — through the
//! real `aps-controller` binary; and the store's faults: a node killed during a backup and a
//! restore, the whole store unreachable, slow and failing answers through a fault-injecting
//! proxy. Without the cluster the tests fail, naming the script, unless APS_TEST_NO_GARAGE=1.

mod many_controllers;
mod servers;
mod store_faults;
