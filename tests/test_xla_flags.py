from jaxlab._xla_flags import cpu_flags_to_add

FLAG = "--xla_cpu_experimental_ynn_fusion_type=dot"


def test_adds_the_cpu_flag_for_the_tested_jaxlib_series_only():
    assert cpu_flags_to_add("", "0.10.2", None) == [FLAG]
    assert cpu_flags_to_add("--xla_force_host_platform_device_count=8", "0.10.2", None) == [FLAG]
    assert cpu_flags_to_add("", "0.11.0", None) == []  # unknown flags abort XLA: never guess


def test_never_overrides_the_user_or_the_opt_out():
    assert cpu_flags_to_add("--xla_cpu_experimental_ynn_fusion_type=all", "0.10.2", None) == []
    assert cpu_flags_to_add("", "0.10.2", "1") == []
