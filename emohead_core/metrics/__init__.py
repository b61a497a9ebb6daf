"""Evaluation metrics of the paper (Sec. IV-A) and the tables (I, II, IV, VI).

* :mod:`image` - frame alignment, PSNR, SSIM;  :mod:`lpips` - LPIPS (AlexNet);  :mod:`fid` - FID;
* :mod:`landmarks` - M-LMD / F-LMD (3DDFA or dlib landmarks);  :mod:`au` - AUE;
* :mod:`sync` - SyncNet, LSE-C / LSE-D and the +/-15 frame offset search;
* :mod:`emotion` - ER (FER classifier, 3DMM-expression baseline);  :mod:`human` - evaluation sheet;
* :mod:`evaluate` - per-clip metric rows;  :mod:`tables` - Tables I, II, IV, VI with paper rows.
"""
