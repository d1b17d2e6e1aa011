"""One sigmoid neuron, then the tutorial's 2-2-1 network, fed forward by hand-set weights.

Run:  python examples/neuron.py
"""

import argparse

import numpy as np

import fastnn


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="fastnn-examples-out",
                        help="output folder (unused: this example draws nothing)")
    parser.add_argument("--quick", action="store_true", help="accepted for uniformity")
    parser.parse_args(argv)

    # A single neuron: sigmoid(w . x + b).
    neuron = fastnn.Neuron(weights=[0, 1], bias=4)
    print(neuron.feedforward([2, 3]))  # 0.9990889488055994

    # Two hidden neurons and one output, every neuron with weights [0, 1] and bias 0.
    # fastnn stores a layer's weights as W[n_in, n_out]: neuron j's weights are column j.
    net = fastnn.Network([fastnn.Dense(2, 2, "sigmoid"), fastnn.Dense(2, 1, "sigmoid")],
                         dtype="float64")
    net.layers[0].W = [[0, 0],
                       [1, 1]]
    net.layers[1].W = [[0],
                       [1]]
    for layer in net.layers:
        layer.b = np.zeros(layer.n_out)
    print(net.predict([2.0, 3.0])[0])  # 0.7216325609518421


if __name__ == "__main__":
    main()
