"""Lightning training of signlab models: data module, module, callbacks, the train entry point."""
