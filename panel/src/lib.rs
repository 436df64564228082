//! `aps-panel`: the control panel's part of the APS backup scenario — when to back up and where
//! to (periodicities, backup stores, retention, off-machine copies, restore drills) — on top of
//! the controller, which does the how. It knows nothing of XML or of scripts.
