package config

import (
	"fmt"
	"io"

	"github.com/pelletier/go-toml/v2"
)

// WriteEffective writes c as TOML with every key, defaults included, in a
// form Parse reads back to an equal Config. It includes secrets as they are
// configured ([http] token, [smtp.users] passwords, the Redis URL).
func (c *Config) WriteEffective(w io.Writer) error {
	src := c.File
	if src == "" {
		src = "built-in defaults"
	}
	if _, err := fmt.Fprintf(w, "# Effective penstock configuration, from %s.\n# Contains secrets if any are configured.\n\n", src); err != nil {
		return err
	}
	enc := toml.NewEncoder(w)
	enc.SetIndentTables(false)
	if err := enc.Encode(c); err != nil {
		return fmt.Errorf("config: writing effective config: %w", err)
	}
	return nil
}
