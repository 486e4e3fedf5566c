package logging

// LevelDefault is the level New logs at by default (LOG_LEVEL).
const LevelDefault = "info"
