from depthlab.models import count_parameters, create_model


def test_cnn_tanh_depth9_has_9058_parameters():
    assert count_parameters(create_model("cnn-tanh", depth=9)) == 9058
