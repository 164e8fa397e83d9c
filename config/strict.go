package config

// DecodeStrict decodes a TOML file's contents into v as Load does:
// unknown keys are errors, and every error names file:line:col and the
// key. Other TOML files of berth (deploy's service specs) use it.
func DecodeStrict(file string, data []byte, v any) error { return decodeStrict(file, data, v) }
