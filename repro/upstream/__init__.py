"""The upstream PaddleClas checkout: its pin, fetching it, our patches on it, and its state (the record a
run's manifest keeps, ``state.inspect_checkout``): everything proven rests on knowing which upstream code ran."""
