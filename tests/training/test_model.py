import keras
import pytest

from training.model import make_model


def test_feature_map_sizes_follow_the_talk():
    model = make_model()
    shape, sizes = (None, 150, 150, 3), []
    for layer in model.layers:
        shape = layer.compute_output_shape(shape)
        if isinstance(layer, (keras.layers.Conv2D, keras.layers.MaxPooling2D)):
            assert shape[1] == shape[2]
            sizes.append(shape[1])
    assert sizes == [148, 74, 72, 36, 34, 17, 15, 7]
    assert tuple(shape) == (None, 3)
    assert model.compute_output_shape((None, 150, 150, 3)) == (None, 3)


def test_parameter_count_for_three_classes():
    assert make_model(num_classes=3).count_params() == 3_473_475


def test_class_count_sets_the_output_layer():
    model = make_model(num_classes=5)
    assert model.compute_output_shape((None, 150, 150, 3)) == (None, 5)
    assert model.get_layer("scores").activation.__name__ == "softmax"


@pytest.mark.parametrize("num_classes", [1, 0, -3])
def test_fewer_than_two_classes_is_an_error(num_classes):
    with pytest.raises(ValueError, match="at least 2"):
        make_model(num_classes=num_classes)


def test_compact_network_is_small_and_pools_globally():
    model = make_model(num_classes=4, arch="compact")
    assert model.compute_output_shape((None, 150, 150, 3)) == (None, 4)
    assert 500_000 < model.count_params() < 800_000
    assert any(isinstance(layer, keras.layers.GlobalAveragePooling2D) for layer in model.layers)
    assert not any(isinstance(layer, keras.layers.Flatten) for layer in model.layers)
    # it works at 112 px inside the graph; the input stays the served 150x150
    assert model.get_layer("work_size").compute_output_shape((None, 150, 150, 3)) == (None, 112, 112, 3)


def test_unknown_arch_is_refused():
    with pytest.raises(ValueError, match="unknown arch"):
        make_model(arch="resnet")
