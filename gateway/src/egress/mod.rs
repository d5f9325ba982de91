//! Egress, after `results`: result objects forwarded to PACS by C-STORE
//! through a durable retry queue.
