"""The whole test run sees no system dataset, even on a machine that has it.

The README's test command must be all the set-up a user needs, so no test and
no quick-mode notebook may depend on the full Fashion-MNIST that
``apt-get install dataset-fashion-mnist`` puts in
``/usr/share/datasets/fashion-mnist``.  Two layers make that hold on every
machine, CI included:

1. ``_CAPTUM_PRIOR_HIDE_SYSTEM_DATA=1`` in the environment: the loader
   (``captum_prior.data.load_fashion_mnist``) then does not search the Debian
   folder, and raises its usual "not found" message.  Every process the tests
   start inherits it (notebook kernels, the CLI, torchrun workers).
2. An audit hook (``tests/_system_data_guard/sitecustomize.py``) in pytest
   and, through ``PYTHONPATH``, in every Python subprocess that keeps the
   inherited ``PYTHONPATH``: opening or listing anything under the system
   folder raises ``SystemDataRead`` and is logged; an autouse fixture fails
   the test whose run (in any process) logged a read.
"""

from __future__ import annotations

import importlib.util
import os
import tempfile
from pathlib import Path

import pytest

from captum_prior.data import fashion_mnist

GUARD_DIR = Path(__file__).resolve().parent / "_system_data_guard"
_spec = importlib.util.spec_from_file_location("_system_data_guard", GUARD_DIR / "sitecustomize.py")
guard = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(guard)

os.environ[fashion_mnist.HIDE_SYSTEM_VAR] = "1"
os.environ[guard.WATCH_VAR] = os.path.abspath(fashion_mnist.DEBIAN_DIR)
_fd, _log = tempfile.mkstemp(prefix="captum_prior_system_data_reads_", suffix=".log")
os.close(_fd)
os.environ[guard.LOG_VAR] = _log
os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(GUARD_DIR), os.environ.get("PYTHONPATH")]))
guard.install()


def _log_size() -> int:
    return os.path.getsize(_log)


@pytest.fixture(autouse=True)
def no_system_dataset_read():
    """Fail the test if it (or a process it started) read the system dataset."""
    start = _log_size()
    yield
    if _log_size() > start:
        with open(_log) as fh:
            fh.seek(start)
            reads = fh.read()
        pytest.fail("the test read the system dataset (the README's set-up does not install it):\n" + reads,
                    pytrace=False)


def pytest_unconfigure(config):
    try:
        os.remove(_log)
    except OSError:
        pass


# ---------------------------------------------------------------- test tiers
#: test modules that are slow as a whole: every notebook executed, every
#: README block in a subprocess, a two-rank torchrun, the DMM-MEN MCMC fits,
#: and modules whose tests share an expensive module-scoped fit or run (a
#: fixture's cost lands on whichever of its tests runs first).
SLOW_MODULES = frozenset({
    "test_tutorials.py", "test_readme.py", "test_torchrun.py",
    "test_dmm_men.py", "test_dmm_men_attribution.py", "test_dmm_men_insights.py",
    "test_dmm_men_sampler.py", "test_dmm_men_tempering.py",
    "test_metrics_sanity.py", "test_report.py", "test_jgmm_pooling_decoder.py",
})

#: every other test whose calls (all parametrisations together) took more
#: than about 0.45 s on an idle 2-core machine: measured with
#: ``pytest --durations=0`` (summed per test over its parametrisations),
#: cut so that ``pytest -m "not slow"`` stays under a minute.  Written as
#: ``module::test name`` without the parametrisation; one entry marks every
#: parametrisation.  A new test over the cut belongs here.
SLOW_TESTS = frozenset({
    "test_allocator.py::test_fixed_thresholds_stop_the_page_fault_churn_and_change_no_result",
    "test_bad_input.py::test_0_255_images_warn_for_the_bundled_model",
    "test_bad_input.py::test_bay_lime_names_a_tuple_output_and_a_wrong_feature_mask",
    "test_bad_input.py::test_dmm_men_convergence_warning_is_shown_once_over_many_fits",
    "test_bad_input.py::test_dmm_men_fit_bad_input",
    "test_bad_input.py::test_input_range_warning_is_shown_once_in_a_17_image_loop",
    "test_bad_input.py::test_nan_model_output_raises_naming_model_and_example",
    "test_bad_input.py::test_optimized_baseline_rejects_inputs_far_outside_clip",
    "test_bad_input.py::test_options_are_validated_where_given",
    "test_bad_input.py::test_train_mode_model_warns_and_mode_is_unchanged",
    "test_bay_lime.py::test_intervals_shapes_feature_mask_and_levels",
    "test_bay_lime.py::test_intervals_shrink_as_samples_grow",
    "test_captum_dropin.py::test_callable_baselines_everywhere",
    "test_captum_dropin.py::test_gradient_shap_callable_baselines_and_noise",
    "test_captum_dropin.py::test_ig_multidim_output_tuple_targets",
    "test_captum_dropin.py::test_ig_target_forms_on_2d_outputs",
    "test_captum_dropin.py::test_tuple_targets_on_4d_outputs_equal_picked_scalar_output",
    "test_chunking.py::test_chunk_size_does_not_grow_with_the_number_of_rows",
    "test_chunking.py::test_default_insertion_deletion_and_eg_are_not_the_slow_all_at_once_call",
    "test_chunking.py::test_default_sizes_chunks_from_the_activation_and_explicit_is_obeyed",
    "test_chunking.py::test_peak_memory_is_flat_in_n_samples",
    "test_cli.py::test_argument_errors_come_before_the_model_loads",
    "test_cli.py::test_bad_input_one_line_exit_2",
    "test_cli.py::test_captum_gradient_shap_in_explain_is_chunked_and_unchanged",
    "test_cli.py::test_captum_ig_in_explain_is_chunked_by_default",
    "test_cli.py::test_class_index_mapping_and_label_disagreement_warning",
    "test_cli.py::test_evaluate_steps_reference_and_forward_pass_count",
    "test_cli.py::test_every_method_runs",
    "test_cli.py::test_explain_and_evaluate_in_process",
    "test_cli.py::test_path_family_methods_in_explain",
    "test_cli.py::test_python_m_captum_prior_one_line_error",
    "test_cli.py::test_references_option_and_warnings",
    "test_cli.py::test_refused_rerun_names_n_samples_with_both_values",
    "test_cli.py::test_sigkill_then_resume_rewrites_nothing_and_matches",
    "test_deep_prior_units.py::test_default_scale_is_in_data_units",
    "test_deep_prior_units.py::test_explicit_clamp_range",
    "test_deep_prior_units.py::test_layer_none_picks_the_final_block_output_on_a_resnet",
    "test_deep_prior_units.py::test_prior_shifted_baselines_stay_inside_the_clamp_range",
    "test_dmm_men_segmentation.py::test_dmm_men_attribution_defaults_to_superpixels",
    "test_expected_gradients.py::test_captum_metrics_and_noise_tunnel",
    "test_expected_gradients.py::test_chunked_equals_unchunked_on_conv_model",
    "test_expected_gradients.py::test_completeness_and_shrinking_delta",
    "test_expected_gradients.py::test_converges_to_gradient_shap",
    "test_expected_gradients.py::test_deep_prior_equals_plain_reference_loop",
    "test_expected_gradients.py::test_equals_plain_reference_loop",
    "test_expected_gradients.py::test_same_seed_same_result_and_global_rng",
    "test_expected_gradients.py::test_tuple_inputs_targets_and_additional_args",
    "test_expected_gradients.py::test_zero_prior_equals_expected_gradients_exactly",
    "test_frozen_models.py::test_frozen_gives_the_same_attributions_as_trainable",
    "test_frozen_models.py::test_runs_on_frozen_model_and_leaves_it_frozen",
    "test_jgmm_explainer.py::test_counterfactuals_and_semifactuals_respect_their_constraints",
    "test_jgmm_explainer.py::test_dataloader_equals_tensor_input_and_explicit_higher_layer",
    "test_jgmm_explainer.py::test_fit_reads_two_layers_with_hooks_then_removes_them",
    "test_jgmm_explainer.py::test_proxy_accuracy_matches_definition_and_is_faithful",
    "test_metrics_insertion_deletion.py::test_bad_input_raises_naming_the_argument",
    "test_metrics_insertion_deletion.py::test_curve_endpoints_and_rise_auc_formula",
    "test_metrics_insertion_deletion.py::test_diff_id_matches_hand_computation_and_counts_calls",
    "test_metrics_insertion_deletion.py::test_forward_calls_are_as_few_as_the_batch_size_allows",
    "test_metrics_insertion_deletion.py::test_independent_of_batch_composition_and_chunking",
    "test_metrics_insertion_deletion.py::test_matches_per_step_reference_loop",
    "test_metrics_insertion_deletion.py::test_probability_aucs_in_unit_interval_and_difference",
    "test_metrics_keep_remove.py::test_batch_composition_and_chunking_do_not_matter",
    "test_metrics_keep_remove.py::test_kpm_of_true_attributions_exceeds_kpm_of_their_negation",
    "test_metrics_road.py::test_seeded_noise_is_reproducible_and_chunking_invariant",
    "test_metrics_sensitivity_n.py::test_exact_attributions_of_linear_model_correlate_perfectly",
    "test_metrics_sensitivity_n.py::test_seeded_batch_independent_and_call_count",
    "test_no_corruption.py::test_interrupted_save_leaves_the_previous_file_intact",
    "test_no_corruption.py::test_rejected_step_leaves_model_and_optimiser_bitwise_unchanged",
    "test_optimized_baseline.py::test_batched_sigmas_and_chunks_match_separate_runs",
    "test_optimized_baseline.py::test_cross_entropy_objective_raises_predicted_class_probability",
    "test_optimized_baseline.py::test_delta_constraint_and_diagnostics",
    "test_optimized_baseline.py::test_usable_as_captum_ig_baseline",
    "test_package.py::test_cli_demo_writes_png",
    "test_path_family.py::test_agi_seeded_chunk_invariant_and_target_forms",
    "test_path_family.py::test_blur_ig_agrees_with_pair_saliency",
    "test_path_family.py::test_blur_ig_completeness_and_chunking",
    "test_path_family.py::test_guided_ig_agrees_with_pair_saliency",
    "test_path_family.py::test_guided_ig_with_no_deviation_is_left_riemann_ig",
    "test_path_family.py::test_idgi_attributions_sum_to_the_output_difference",
    "test_path_family.py::test_idgi_positional_ig_call_and_noise_tunnel",
    "test_per_example_generators.py::test_eg_list_equals_one_call_per_example",
    "test_per_example_generators.py::test_vpg_optimized_baselines_list",
    "test_priors.py::test_deep_prior_eg_with_priors_end_to_end",
    "test_priors.py::test_fit_on_reference_set_and_reference_code_modes",
    "test_priors.py::test_mixed_train_eval_modes_are_restored_exactly",
    "test_priors.py::test_shape_range_determinism_and_model_untouched",
    "test_runner.py::test_batched_generators_match_one_call_per_example",
    "test_runner.py::test_evaluate_compare_and_report",
    "test_runner.py::test_evaluate_refuses_unfinished_or_wrong_dataset",
    "test_runner.py::test_float16_and_constant_target",
    "test_runner.py::test_forward_pass_count_matches_the_metrics",
    "test_runner.py::test_global_rng_methods_seeded_per_example",
    "test_runner.py::test_load_subset_reads_only_its_shards",
    "test_runner.py::test_mismatching_manifest_is_refused",
    "test_runner.py::test_object_random_state_bay_lime",
    "test_runner.py::test_results_do_not_depend_on_batch_or_shard_size",
    "test_runner.py::test_resume_skips_finished_and_redoes_corrupt_shards",
    "test_runner.py::test_vpg_monte_carlo_batched_matches_per_example",
    "test_training.py::test_shared_forward_prior_gives_the_same_steps_as_a_separate_forward",
    "test_training.py::test_trainer_reduces_the_penalised_objective",
    "test_valid_path_gradients.py::test_chunked_equals_unchunked_with_optimized_baselines",
    "test_valid_path_gradients.py::test_default_baselines_are_optimized_baselines",
    "test_valid_path_gradients.py::test_noise_tunnel_and_captum_metrics",
    "test_valid_path_gradients.py::test_single_and_several_optimized_baselines",
    "test_valid_path_gradients.py::test_target_forms",
    "test_vbgmm.py::test_batch_fits_each_element_as_if_alone",
    "test_vbgmm.py::test_lower_bound_and_responsibilities_match_sklearn",
    "test_vbgmm.py::test_numpy_and_torch_engines_agree",
    "test_vbgmm.py::test_prior_posterior_is_sklearns_fit_from_the_same_start",
    "test_vpg_quadrature.py::test_gausslegendre_50_steps_within_2x_of_ig_where_every_feature_is_valid",
    "test_vpg_quadrature.py::test_input_range_inferred_with_warning_explicit_without",
})


#: module-scoped fixtures that run an MCMC fit: every test using one is slow.
SLOW_FIXTURES = frozenset({"fitted_dmm"})


def pytest_collection_modifyitems(config, items):
    """Mark the slow tier (``@pytest.mark.slow``): ``pytest -m "not slow"`` is
    the edit loop (under a minute on 2 cores); ``pytest tests`` runs all."""
    slow = pytest.mark.slow
    for item in items:
        module = item.nodeid.split("::", 1)[0].rsplit("/", 1)[-1]
        name = f"{module}::{item.originalname if hasattr(item, 'originalname') else item.name}"
        if module in SLOW_MODULES or name in SLOW_TESTS or SLOW_FIXTURES.intersection(
                getattr(item, "fixturenames", ())):
            item.add_marker(slow)
