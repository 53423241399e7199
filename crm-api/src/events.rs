//! Live events for connected browsers (placeholder; the event bus lands in the next commit).
