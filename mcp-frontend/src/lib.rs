//! The MCP front door (rmcp over Streamable HTTP, plus a REST proxy): authenticates, authorizes,
//! audits, and starts or reads workflows. Intentionally empty until its own issue lands; the
//! crate exists so the workspace layout and dependency direction are fixed from the start.
