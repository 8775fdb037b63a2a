//! Decode the terminal QR code that `provision-peer --qr` prints.
//!
//! Each character is two vertical modules drawn with ' ' '▀' '▄' '█'. The
//! program draws for a dark terminal: a DARK module is left blank and a
//! LIGHT module is drawn as block, so a drawn half is light here.

/// The QR block of `text`: the consecutive lines made only of half blocks.
fn qr_lines(text: &str) -> Vec<Vec<char>> {
    let is_qr = |l: &str| !l.is_empty() && l.chars().all(|c| " ▀▄█".contains(c));
    text.lines()
        .skip_while(|l| !is_qr(l) || l.trim().is_empty())
        .take_while(|l| is_qr(l))
        .map(|l| l.chars().collect())
        .collect()
}

/// Module (x, y) lit (drawn as block, i.e. a light module)?
fn lit(c: char, lower: bool) -> bool {
    match c {
        '█' => true,
        '▀' => !lower,
        '▄' => lower,
        _ => false,
    }
}

/// The modules as `dark[y][x]`. A QR code with its quiet zone has an odd
/// number of rows, so the lower half of the last text row is padding.
fn modules(lines: &[Vec<char>]) -> Vec<Vec<bool>> {
    let width = lines.iter().map(Vec::len).max().unwrap_or(0);
    let mut rows = Vec::new();
    for line in lines {
        for lower in [false, true] {
            let row = (0..width)
                .map(|x| !lit(line.get(x).copied().unwrap_or('█'), lower))
                .collect();
            rows.push(row);
        }
    }
    if rows
        .last()
        .is_some_and(|r: &Vec<bool>| r.iter().all(|&d| d))
    {
        rows.pop();
    }
    rows
}

/// Decode the first QR code printed in `text`, or say why not.
pub fn decode(text: &str) -> Result<String, String> {
    const BORDER: usize = 4;
    const SCALE: usize = 4;
    let lines = qr_lines(text);
    if lines.len() < 10 {
        return Err(format!("no QR code in the output ({} rows)", lines.len()));
    }
    let dark = modules(&lines);
    let (h, w) = (dark.len(), dark[0].len());
    let size = |n: usize| (n + 2 * BORDER) * SCALE;
    let mut image = rqrr::PreparedImage::prepare_from_bitmap(size(w), size(h), |x, y| {
        let (mx, my) = (x / SCALE, y / SCALE);
        if mx < BORDER || my < BORDER || mx >= w + BORDER || my >= h + BORDER {
            return false;
        }
        dark[my - BORDER][mx - BORDER]
    });
    let grids = image.detect_grids();
    let grid = grids.first().ok_or("no QR grid found")?;
    grid.decode()
        .map(|(_, content)| content)
        .map_err(|e| format!("QR decode failed: {e:?}"))
}
