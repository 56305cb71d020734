"""The image operations of skimage, scipy and ImageMagick that MNIST-C's corruptions (common/corruptions.py) call,
for a batch of N x 1 x 28 x 28 torch images on any device."""
import torch
import torch.nn.functional as F


def gaussian_blur(images, sigma, radius=None, padding="constant", horizontal=True):
    """Blur N x 1 x H x W images with a Gaussian of ``sigma`` pixels, taps out to ``radius`` (default 3 sigma), padded
    by ``padding`` ("constant": black, or "replicate"); ``horizontal=False`` blurs along the columns only."""
    radius = int(3 * sigma) if radius is None else radius
    taps = torch.exp(-0.5 * (torch.arange(-radius, radius + 1, device=images.device) / sigma) ** 2)
    taps = taps / taps.sum()
    # A Gaussian is separable: a row pass, then a column pass.
    if horizontal:
        images = F.conv2d(F.pad(images, (radius, radius, 0, 0), mode=padding), taps.view(1, 1, 1, -1))
    return F.conv2d(F.pad(images, (0, 0, radius, radius), mode=padding), taps.view(1, 1, -1, 1))


def skimage_gaussian(images, sigma, **options):
    """skimage.filters.gaussian as MNIST-C calls it: scipy's gaussian_filter, taps out to 4 sigma, the border pixel
    repeated beyond the edge (its mode "nearest")."""
    return gaussian_blur(images, sigma, radius=int(4 * sigma + 0.5), padding="replicate", **options)


def warp(images, matrices, mode="bilinear", padding_mode="zeros"):
    """skimage.transform.warp(x, inverse_map=A) for a batch: output pixel (col, row) reads the input at
    A @ (col, row, 1), A one 2 x 3 matrix per image in pixel units."""
    n, _, height, width = images.shape
    rows, cols = torch.meshgrid(torch.arange(height, device=images.device, dtype=images.dtype),
                                torch.arange(width, device=images.device, dtype=images.dtype), indexing="ij")
    points = torch.stack([cols, rows, torch.ones_like(rows)], dim=-1).view(1, -1, 3)    # 1 x HW x (col, row, 1)
    source = points @ matrices.transpose(1, 2)                                          # n x HW x (col, row)
    # grid_sample's coordinates run from -1 to 1 across the pixel centres (align_corners=True).
    grid = 2 * source / torch.tensor([width - 1, height - 1], device=images.device) - 1
    return F.grid_sample(images, grid.view(n, height, width, 2), mode=mode, padding_mode=padding_mode,
                         align_corners=True)


def centred_affine(linear):
    """2 x 3 matrices with the linear parts ``linear`` (n x 2 x 2) that keep the image centre (13.5, 13.5) fixed, as
    MNIST-C's affine corruptions do."""
    centre = torch.full((len(linear), 2, 1), 13.5, device=linear.device)
    return torch.cat([linear, centre - linear @ centre], dim=2)


def shifted(shift):
    """2 x 3 matrices that read each output pixel ``shift`` (n x (col, row)) pixels away."""
    return torch.cat([torch.eye(2, device=shift.device).expand(len(shift), 2, 2), shift[..., None]], dim=2)


def soft_lines(start, end):
    """MNIST-C's line_from_points for a batch: n x 1 x 28 x 28 intensities of the lines from ``start`` to ``end``
    (n x (col, row) each): log(1 - d / 2.3) + 1 at vertical distance d from the line, clipped to [0, 1], in the
    columns from floor(start col) up to, not including, ceil(end col)."""
    position = torch.arange(28.0, device=start.device)
    slope = (end[:, 1] - start[:, 1]) / (end[:, 0] - start[:, 0])                      # rows per column
    line_row = start[:, 1, None] + slope[:, None] * (position - start[:, 0, None])     # n x 28 (columns)
    distance = (position.view(1, 28, 1) - line_row[:, None, :]).abs().clamp(max=2.3)   # n x rows x cols
    intensity = (torch.log1p(-distance / 2.3) + 1).clamp(0, 1)                         # log(0) = -inf clips to 0
    drawn = (position >= start[:, 0, None].floor()) & (position < end[:, 0, None].ceil())
    return (intensity * drawn[:, None, :])[:, None]


def zigzag_vertices(r0, r1):
    """The n x 8 x (col, row) vertices of MNIST-C's zigzag from (col 2, row r0) towards (col 25, row r1): teeth of
    half-width a = 2 columns and height b = 2 rows about the straight line of length d, a last vertex at its far end
    (at MNIST-C's height), the whole rotated onto the line. For |r1 - r0| <= 5, d = 23 to 23.5: always 8 vertices."""
    a, b = 2.0, 2.0
    theta = torch.atan((r1 - r0) / 23)
    d = 23 / torch.cos(theta)
    teeth = torch.arange(6, device=r0.device)
    cols = torch.cat([torch.zeros_like(d)[:, None], ((2 * teeth + 1) * a).expand(len(d), 6), d[:, None]], dim=1)
    last = b * (-1.0) ** 5 / (2 * (d - 2 * a * torch.floor(d / (2 * a))))
    rows = torch.cat([torch.zeros_like(d)[:, None], (b * (-1.0) ** teeth).expand(len(d), 6), last[:, None]], dim=1)
    cos, sin = torch.cos(theta)[:, None], torch.sin(theta)[:, None]
    return torch.stack([cos * cols - sin * rows + 2, sin * cols + cos * rows + r0[:, None]], dim=2)


def plasma_fractal(n, generator, device, size=256, decay=1.4):
    """n greyscale plasma fractals in [0, 1], size x size: the diamond-square algorithm of ImageNet-C's fog
    (Hendrycks & Dietterich 2019), vectorised over the batch (their random draws, in another order)."""
    maps = torch.zeros(n, size, size, device=device)
    step, wibble = size, 100.0

    def wibbled_mean(total):
        return total / 4 + wibble * (2 * torch.rand(total.shape, generator=generator, device=device) - 1) * wibble

    while step >= 2:
        half = step // 2
        # Squares: each square's centre is the mean of its four corners plus noise.
        corners = maps[:, ::step, ::step]
        square = corners + corners.roll(-1, 1)
        square = square + square.roll(-1, 2)
        maps[:, half::step, half::step] = wibbled_mean(square)
        # Diamonds: each edge's midpoint is the mean of its two corners and the two square centres beside it.
        centres, corners = maps[:, half::step, half::step], maps[:, ::step, ::step]
        maps[:, ::step, half::step] = wibbled_mean(centres + centres.roll(1, 1) + corners + corners.roll(-1, 2))
        maps[:, half::step, ::step] = wibbled_mean(centres + centres.roll(1, 2) + corners + corners.roll(-1, 1))
        step, wibble = half, wibble / decay
    low = maps.amin((1, 2), keepdim=True)
    return (maps - low) / (maps.amax((1, 2), keepdim=True) - low)


def glass_swaps(levels, generator, iterations=2):
    """ImageNet-C's local shuffle in glass blur, at MNIST-C's max_delta 1: ``iterations`` sweeps over the rows h and
    the columns w from 27 down to 2, each swapping pixel (h, w), with probability 1/2, with (h + dy, w + dx), dy and
    dx each -1 or 0; one swap after another, as theirs (a pixel can travel several steps in one sweep)."""
    n, device = len(levels), levels.device
    x = levels.flatten(1).clone()
    sweep = [(h, w) for h in range(27, 1, -1) for w in range(27, 1, -1)]
    swap = torch.rand(iterations, len(sweep), n, generator=generator, device=device) < 0.5
    dy, dx = torch.randint(-1, 1, (2, iterations, len(sweep), n), generator=generator, device=device)
    for iteration in range(iterations):
        for step, (h, w) in enumerate(sweep):
            here = h * 28 + w
            there = torch.where(swap[iteration, step], here + dy[iteration, step] * 28 + dx[iteration, step], here)
            moving = x[:, here].clone()
            x[:, here] = x.gather(1, there[:, None])[:, 0]
            x.scatter_(1, there[:, None], moving[:, None])
    return x.view_as(levels)


def canny(images, sigma=1.0, low=0.1, high=0.2):
    """Canny edges (Canny 1986) as skimage.feature.canny draws them with its defaults: a Gaussian of ``sigma``
    (normalised at the border), Sobel gradients, thinning to the local maxima along the gradient, and hysteresis
    between the thresholds ``low`` and ``high``; no edge on the image's outermost pixels."""
    radius = int(4 * sigma + 0.5)
    smooth = gaussian_blur(images, sigma, radius) / gaussian_blur(torch.ones_like(images), sigma, radius)
    padded = F.pad(smooth, (1, 1, 1, 1), mode="replicate")
    sobel = torch.tensor([[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]], device=images.device)
    gx = F.conv2d(padded, sobel.view(1, 1, 3, 3))                 # along the columns
    gy = F.conv2d(padded, sobel.t().reshape(1, 1, 3, 3))          # along the rows
    magnitude = torch.hypot(gx, gy)
    # Non-maximum suppression: a pixel is kept if it is no smaller than the magnitude one step ahead and one step
    # behind along its gradient, each interpolated between the nearest axis neighbour and the diagonal one.
    steep = gy.abs() >= gx.abs()
    weight = torch.where(steep, gx.abs() / gy.abs(), gy.abs() / gx.abs()).nan_to_num(0.0)
    sy, sx = gy.sign().long(), gx.sign().long()
    axis_step = torch.where(steep, sy * 28, sx)
    diagonal_step = sy * 28 + sx
    flat = magnitude.flatten(1)
    index = torch.arange(28 * 28, device=images.device).view(1, 1, 28, 28)
    interior = torch.zeros(28, 28, dtype=torch.bool, device=images.device)
    interior[1:-1, 1:-1] = True
    keep = interior.clone()
    for direction in (1, -1):
        def at(step):  # the magnitude one step along the gradient (the border's steps are never used)
            return flat.gather(1, (index + direction * step).clamp(0, 28 * 28 - 1).flatten(1)).view_as(magnitude)
        keep = keep & (magnitude >= weight * at(diagonal_step) + (1 - weight) * at(axis_step))
    weak = keep & (magnitude >= low)
    edges = weak & (magnitude >= high)
    while True:  # hysteresis: grow the strong edges along the weak ones (8-connected) until nothing changes
        grown = weak & (F.max_pool2d(edges.float(), 3, stride=1, padding=1) > 0)
        if torch.equal(grown, edges):
            return edges.float()
        edges = grown
